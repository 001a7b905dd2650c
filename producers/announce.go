package producers

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// AnnouncePrefix is the folder of the new-ID markers.
const AnnouncePrefix = "announce/"

// The new-ID convention. S3 lists keys in lexical order, so a cursor over
// ids/ cannot see a new ID that sorts before it. Whoever uploads a new ID
// therefore first writes all its images under ids/<id>/, then an empty
// marker object
//
//	announce/<unix nanoseconds, zero-padded to 20 digits>-<id>
//
// Markers sort by time. Each producer polls announce/ with StartAfter set
// a little behind the newest marker it has seen (AnnounceLookback), lists
// ids/<id>/ of each marker it has not handled yet and puts a new ID into
// the id rotation ahead of the uniform order. Markers are never deleted by
// producers (several read them); expire them with a bucket lifecycle rule.

// AnnounceKey returns the marker key for id written at t.
func AnnounceKey(t time.Time, id uint64) string {
	return fmt.Sprintf("%s%020d-%d", AnnouncePrefix, t.UnixNano(), id)
}

// ParseAnnounceKey splits a marker key into its time (Unix nanoseconds)
// and ID.
func ParseAnnounceKey(key string) (nanos int64, id uint64, err error) {
	rest, ok := strings.CutPrefix(key, AnnouncePrefix)
	if !ok || len(rest) < 22 || rest[20] != '-' {
		return 0, 0, fmt.Errorf("announcement %q: want %s<20-digit unix nanos>-<id>", key, AnnouncePrefix)
	}
	ts, idStr := rest[:20], rest[21:]
	nanos, err1 := strconv.ParseInt(ts, 10, 64)
	id, err2 := strconv.ParseUint(idStr, 10, 64)
	if err1 != nil || err2 != nil || nanos < 0 || strconv.FormatUint(id, 10) != idStr || ts[0] == '+' {
		return 0, 0, fmt.Errorf("announcement %q: want %s<20-digit unix nanos>-<decimal id>", key, AnnouncePrefix)
	}
	return nanos, id, nil
}

// announceCursor is the StartAfter that lists every marker written at or
// after nanos.
func announceCursor(nanos int64) string {
	if nanos < 0 {
		nanos = 0
	}
	// "announce/<ts>" sorts right before every "announce/<ts>-<id>".
	return fmt.Sprintf("%s%020d", AnnouncePrefix, nanos)
}

// Announce tells the producers watching bucket that id is new: call it
// after every image of id is written. It writes the marker
// announce/<unix nanos>-<id> (empty body).
func Announce(ctx context.Context, mc *minio.Client, bucket string, id uint64) error {
	key := AnnounceKey(time.Now(), id)
	_, err := mc.PutObject(ctx, bucket, key, bytes.NewReader(nil), 0, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		// gofakes3 (the embedded S3) corrupts streaming-signed uploads.
		DisableContentSha256: true,
	})
	if err != nil {
		return fmt.Errorf("producers: announce id %d: put %s/%s: %w", id, bucket, key, err)
	}
	return nil
}

// watcher polls announce/ and puts new IDs into rotation.
type watcher struct {
	p *Producer
	// newest is the time of the newest marker seen; the next poll lists
	// from newest − lookback.
	newest int64
	// handled holds the markers at or after newest − lookback that were
	// dealt with, by key → time.
	handled map[string]int64
}

func newWatcher(p *Producer, start time.Time) *watcher {
	return &watcher{p: p, newest: start.UnixNano(), handled: map[string]int64{}}
}

// run polls until ctx ends.
func (w *watcher) run(ctx context.Context) {
	t := time.NewTicker(w.p.cfg.PollInterval)
	defer t.Stop()
	for {
		// A transient error is retried with backoff (retryS3, which fails
		// the object-storage condition when the retries run out); any
		// error is tried again at the next poll.
		_, err := retryS3(ctx, w.p, func() (struct{}, error) { return struct{}{}, w.poll(ctx) })
		if err != nil && ctx.Err() == nil {
			if !s3Transient(err) {
				w.p.s3Failed(err)
			}
			w.p.log.Debug("polling announcements failed; trying again at the next poll", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll lists the markers since newest − lookback once.
func (w *watcher) poll(ctx context.Context) error {
	p := w.p
	lookback := p.cfg.AnnounceLookback.Nanoseconds()
	from := w.newest - lookback
	opts := minio.ListObjectsOptions{Prefix: AnnouncePrefix, StartAfter: announceCursor(from), Recursive: true}
	for obj := range p.cfg.S3.ListObjects(ctx, p.cfg.Bucket, opts) {
		if obj.Err != nil {
			return fmt.Errorf("list %s/%s: %w", p.cfg.Bucket, AnnouncePrefix, obj.Err)
		}
		if _, done := w.handled[obj.Key]; done {
			continue
		}
		nanos, id, err := ParseAnnounceKey(obj.Key)
		if err != nil {
			p.log.Warn("ignoring malformed announcement", "key", obj.Key, "err", err)
			w.handled[obj.Key] = time.Now().UnixNano()
			continue
		}
		if nanos > w.newest {
			w.newest = nanos
		}
		if !p.cfg.Shard.Owns(id) {
			w.handled[obj.Key] = nanos
			continue
		}
		names, err := listID(ctx, p.cfg.S3, p.cfg.Bucket, id, p.newSkipLog())
		if err != nil {
			return err
		}
		if len(names) == 0 {
			// Images not visible yet: try again next poll, for as long as
			// the marker is younger than the lookback.
			if time.Now().UnixNano()-nanos > lookback {
				p.log.Warn("announced id has no images; ignoring the announcement", "id", id, "key", obj.Key)
				w.handled[obj.Key] = nanos
			}
			continue
		}
		w.handled[obj.Key] = nanos
		p.addID(id, names, "announcement")
	}
	for k, ts := range w.handled {
		if ts < w.newest-lookback {
			delete(w.handled, k)
		}
	}
	return nil
}
