package main

import (
	"reflect"
	"testing"
	"time"
)

// The fast reader records exactly what the full decode records for the messages the
// service sends, and leaves everything else to the full decode.
func TestReadFastAgreesWithDecoding(t *testing.T) {
	newConn := func() *subConn {
		return &subConn{mark: func() {}, hist: map[int64]int{}, subs: map[string]*subResult{
			"s1": {Idx: 1, Seen: map[uint64]int64{}}}}
	}
	first := []byte(`{"id":"s1","type":"next","payload":{"data":{"usageStats":{"day":{"requests":2},"recent":[{"requestID":"r2"},{"requestID":"r1"}],"resynced":false}}}}`)
	msgs := [][]byte{
		[]byte(`{"id":"s1","type":"next","payload":{"data":{"usageStats":{"day":{"requests":4},"recent":[{"requestID":"r4"},{"requestID":"r3"},{"requestID":"r2"}],"resynced":false}}}}`),
		[]byte(`{"id":"s1","type":"next","payload":{"data":{"usageStats":{"day":{"requests":5},"recent":[{"requestID":"r5"}],"resynced":true}}}}`),
		[]byte(`{"id":"s1","type":"next","payload":{"data":{"usageStats":{"day":{"requests":6},"resynced":false}}}}`),
	}
	fast, full := newConn(), newConn()
	now := time.Unix(1000, 0)
	if fast.readFast(first, now) {
		t.Fatal("the first message must go through the full decode (it marks the subscription)")
	}
	fast.readDecoded(first, now)
	full.readDecoded(first, now)
	for i, m := range msgs {
		at := now.Add(time.Duration(i+1) * time.Second)
		if !fast.readFast(m, at) {
			t.Fatalf("message %d not read fast: %s", i, m)
		}
		full.readDecoded(m, at)
	}
	if !reflect.DeepEqual(fast.subs, full.subs) || !reflect.DeepEqual(fast.hist, full.hist) {
		t.Fatalf("fast %+v %v\nfull %+v %v", *fast.subs["s1"], fast.hist, *full.subs["s1"], full.hist)
	}
	for _, other := range []string{
		`{"id":"s1","type":"next","payload":{"errors":[{"message":"x"}]}}`,
		`{"id":"s1","type":"complete"}`,
		`{"type":"ping"}`,
		`{"id":"s9","type":"next","payload":{"data":{"usageStats":{"day":{"requests":1},"resynced":false}}}}`,
	} {
		if fast.readFast([]byte(other), now) {
			t.Fatalf("read fast: %s", other)
		}
	}
}
