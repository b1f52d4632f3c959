package backend

import "testing"

func TestCountResponse(t *testing.T) {
	b := New("p", "a:1", 1)
	for _, st := range []int{0, 101, 200, 204, 302, 404, 499, 500, 503, 600, -1} {
		b.CountResponse(st)
	}
	want := [6]uint64{3, 1, 2, 1, 2, 2}
	if got := b.Responses(); got != want {
		t.Fatalf("Responses() = %v, want %v", got, want)
	}
}
