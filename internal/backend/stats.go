package backend

// CountResponse counts one exchange's outcome: its status code, or 0 when no
// response came (connect error, reset, timeout).
func (b *Backend) CountResponse(status int) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	b.responses[class].Add(1)
}

// Responses returns the exchanges counted by CountResponse: [0] without a
// response, [1]..[5] by status class.
func (b *Backend) Responses() [6]uint64 {
	var r [6]uint64
	for i := range r {
		r[i] = b.responses[i].Load()
	}
	return r
}

// Ejections returns how many times passive detection ejected the backend.
func (b *Backend) Ejections() int { return int(b.ejections.Load()) }
