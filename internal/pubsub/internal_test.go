package pubsub

import (
	"bytes"
	"strings"
	"testing"
)

func TestChannelName(t *testing.T) {
	long := strings.Repeat("a", 80)
	cases := []struct {
		topic string
		want  string // "" = only check the invariants
	}{
		{"apikey_invalidate", "ar_apikey_invalidate"},
		{"usage.stats", ""},
		{"Usage", ""},
		{long, ""},
		{"", ""},
	}
	seen := map[string]string{}
	for _, c := range cases {
		got := channelName("ar_", c.topic)
		if c.want != "" && got != c.want {
			t.Errorf("channelName(%q) = %q, want %q", c.topic, got, c.want)
		}
		if len(got) > maxIdentifier || strings.IndexFunc(got, func(r rune) bool { return !validChannelRune(r) }) >= 0 {
			t.Errorf("channelName(%q) = %q: not a valid channel name", c.topic, got)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("topics %q and %q share channel %q", prev, c.topic, got)
		}
		seen[got] = c.topic
	}
	if channelName("ar_", "usage.stats") == channelName("ar_", "usage_stats") {
		t.Error("usage.stats and usage_stats share a channel")
	}
	if channelName("ar_", long) == channelName("ar_", long+"b") {
		t.Error("long topics differing past the limit share a channel")
	}
}

func TestNotifyEncoding(t *testing.T) {
	for _, p := range [][]byte{nil, []byte("plain {json}"), []byte("é"), {0, 1, 2, 0xff}, []byte("bad utf8 \xc3")} {
		got, err := decodeNotify(encodeNotify(p))
		if err != nil || !bytes.Equal(got, p) {
			t.Errorf("round trip of %q = %q, %v", p, got, err)
		}
	}
	if _, err := decodeNotify("zzz"); err == nil {
		t.Error("unknown tag accepted")
	}
}

func TestWithApplicationName(t *testing.T) {
	got, err := withApplicationName("postgres://u@h:5432/db?sslmode=disable&application_name=x", "bus")
	if err != nil || !strings.Contains(got, "application_name=bus") || strings.Contains(got, "application_name=x") {
		t.Errorf("URL form: %q, %v", got, err)
	}
	got, _ = withApplicationName("host=h dbname=db", "it's")
	if got != `host=h dbname=db application_name='it\'s'` {
		t.Errorf("key=value form: %q", got)
	}
}
