package harness

import (
	"testing"
	"time"
)

func TestParsePressure(t *testing.T) {
	const cpu = "some avg10=3.04 avg60=7.15 avg300=10.59 total=61237962\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=17\n"
	for _, tc := range []struct {
		text, kind string
		want       time.Duration
		wantErr    bool
	}{
		{cpu, "some", 61237962 * time.Microsecond, false},
		{cpu, "full", 17 * time.Microsecond, false},
		{"some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n", "full", 0, true}, // older kernels' cpu file: no full line
		{"full avg10=0.00 total=x\n", "full", 0, true},
		{"", "some", 0, true},
	} {
		got, err := parsePressure(tc.text, tc.kind)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parsePressure(%q, %q) = %v, %v; want %v, error %v", tc.text, tc.kind, got, err, tc.want, tc.wantErr)
		}
	}
}
