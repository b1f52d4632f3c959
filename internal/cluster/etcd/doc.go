// Package etcd is ballast's shared state for active-active clusters: the
// backends that the admin API adds, and the backends that register themselves,
// kept in etcd so that every ballast node serves the same set.
//
// # Key layout
//
// Every key lives under Config.Prefix (default "/ballast/"). Values are JSON
// objects {"addr": "10.0.0.5:8080", "weight": 1, "max_conns": 0, "backup": false}
// (see Backend); "addr" may be left out, it is then taken from the key.
//
//	<prefix>pools/<pool>/backends/<addr>   a backend added by an operator (admin API); no lease
//	<prefix>registrations/<pool>/<addr>    a backend that registered itself; attached to a lease,
//	                                       so it vanishes when the backend stops renewing it
//
// A pool exists in a Snapshot while it has at least one backend. When the same
// addr is both added and registered in one pool, the added entry wins (an
// operator's weight overrides what the backend says about itself). Keys of
// other shapes under the prefix are ignored, so later versions can add their
// own; entries whose value does not parse are skipped with a warning, never
// fatal to the rest of the set.
//
// # Behaviour during an etcd outage
//
// A Store keeps working from what it knows: Watch stops delivering (it never
// delivers a set emptied by an outage), writes fail with an error after their
// retries, Healthy reports false and LastError says why, and the client
// reconnects by itself; the watch then resumes from the last revision it saw
// and delivers what changed meanwhile. Registrations survive outages shorter
// than their TTL; after a longer one, Registration registers again.
//
// # Registering from another language
//
// A backend registers with three HTTP calls to etcd's JSON gateway (present in
// etcd 3.4 and later under /v3/): POST /v3/lease/grant {"TTL": 10}, POST
// /v3/kv/put {"key": base64, "value": base64, "lease": ID}, then POST
// /v3/lease/keepalive {"ID": ID} every TTL/3 seconds. README.md in this
// directory has a Python snippet that does it; the package's tests run it
// against a real etcd.
package etcd
