package apikey

import "sync/atomic"

// CountParses makes v count its calls of Keyring.Parse (the signature check a cached key
// skips). Call it before v is used concurrently.
func CountParses(v *Verifier) *atomic.Int64 {
	var n atomic.Int64
	parse := v.parse
	v.parse = func(key string) (Claims, error) {
		n.Add(1)
		return parse(key)
	}
	return &n
}
