package producers

import (
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ffc-stream/ffc/schemas"
)

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
		ok   bool
	}{
		{"0/1", Shard{0, 1}, true},
		{"2/3", Shard{2, 3}, true},
		{"3/3", Shard{}, false},
		{"-1/3", Shard{}, false},
		{"0/0", Shard{}, false},
		{"1", Shard{}, false},
		{"a/b", Shard{}, false},
	} {
		got, err := ParseShard(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseShard(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}

// TestShardsSplitExactly: for every count, each ID is owned by exactly
// one shard, and the shards are about even, consecutive IDs included.
func TestShardsSplitExactly(t *testing.T) {
	const ids = 20000
	for count := 1; count <= 7; count++ {
		per := make([]int, count)
		for id := range uint64(ids) {
			owners := 0
			for i := range count {
				if (Shard{Index: i, Count: count}).Owns(id) {
					owners++
					per[i]++
				}
			}
			if owners != 1 {
				t.Fatalf("count %d: id %d has %d owners", count, id, owners)
			}
		}
		for i, n := range per {
			if exp := ids / count; n < exp*9/10 || n > exp*11/10 {
				t.Errorf("count %d: shard %d owns %d of %d IDs", count, i, n, ids)
			}
		}
	}
	if !(Shard{}).Owns(12345) {
		t.Error("the zero Shard does not own everything")
	}
}

func TestConfigValidate(t *testing.T) {
	mc, err := minio.New("127.0.0.1:1", &minio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	good := Config{Brokers: []string{"127.0.0.1:9092"}, S3: mc, Bucket: "b"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		err  string // substring; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no brokers", func(c *Config) { c.Brokers = nil }, "Brokers"},
		{"no S3", func(c *Config) { c.S3 = nil }, "S3"},
		{"no bucket", func(c *Config) { c.Bucket = "" }, "Bucket"},
		{"bad topic", func(c *Config) { c.TopicByID = "a topic" }, "TopicByID"},
		{"same topic twice", func(c *Config) { c.TopicInstance = schemas.TopicByID }, "also TopicByID"},
		{"bad shard", func(c *Config) { c.Shard = Shard{Index: 2, Count: 2} }, "Shard"},
		{"negative poll", func(c *Config) { c.PollInterval = -time.Second }, "PollInterval"},
		{"flow control off", func(c *Config) { c.MaxLead = -1 }, ""},
		{"rescan off", func(c *Config) { c.RescanInterval = -1 }, ""},
		{"wait for ever", func(c *Config) { c.ConnectTimeout, c.S3RetryTimeout = -1, -1 }, ""},
		{"long source", func(c *Config) { c.Source = strings.Repeat("x", 300) }, "Source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			_, err := New(c)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("New: %v, want an error about %s", err, tc.err)
			}
		})
	}
	p, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	c := p.cfg
	if c.TopicByID != schemas.TopicByID || c.TopicInstance != schemas.TopicInstance || c.TopicDeadLetter != schemas.TopicDeadLetter ||
		c.TrainerGroup != schemas.TrainerGroup || c.MaxLead != DefaultMaxLead || c.Partitions != 8 ||
		c.PollInterval != DefaultPollInterval || c.TopicFresh != schemas.TopicFresh || c.FreshMaxLead != DefaultFreshMaxLead || c.FreshPairs != DefaultFreshPairs || c.RescanInterval != 5*time.Minute || c.Shard != (Shard{0, 1}) ||
		c.ConnectTimeout != time.Minute || c.S3RetryTimeout != 30*time.Second {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestAnnounceKey(t *testing.T) {
	at := time.Unix(1700000000, 123)
	key := AnnounceKey(at, 42)
	if key != "announce/01700000000000000123-42" {
		t.Fatalf("AnnounceKey = %q", key)
	}
	nanos, id, err := ParseAnnounceKey(key)
	if err != nil || nanos != at.UnixNano() || id != 42 {
		t.Fatalf("ParseAnnounceKey(%q) = %d, %d, %v", key, nanos, id, err)
	}
	if c := announceCursor(at.UnixNano()); !(c < key) || !(c > AnnounceKey(at.Add(-1), 99999)) {
		t.Errorf("cursor %q does not sit right before %q", c, key)
	}
	// Keys sort by time whatever the IDs.
	if !(AnnounceKey(at, 999999) < AnnounceKey(at.Add(time.Nanosecond), 1)) {
		t.Error("announce keys do not sort by time")
	}
	for _, bad := range []string{
		"announce/123-4", "announce/01700000000000000123_42", "announce/01700000000000000123-",
		"announce/01700000000000000123-042", "announce/0170000000000000012x-42", "ids/01700000000000000123-42",
		"announce/+1700000000000000123-42",
	} {
		if _, _, err := ParseAnnounceKey(bad); err == nil {
			t.Errorf("ParseAnnounceKey(%q): no error", bad)
		}
	}
}
