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

// RemoveSuffix ends a removal marker, announce/<nanos>-<id>.remove: the
// ID was removed (its objects deleted) and must be forgotten (ffc ids
// remove writes it after deleting the objects).
const RemoveSuffix = ".remove"

// RemovalKey returns the removal marker key for id written at t.
func RemovalKey(t time.Time, id uint64) string { return AnnounceKey(t, id) + RemoveSuffix }

// Marker is a parsed marker key: an announcement, or a removal.
type Marker struct {
	// Nanos is when it was written (Unix nanoseconds).
	Nanos int64
	ID    uint64
	// Remove: a removal marker (RemoveSuffix).
	Remove bool
}

// ParseMarker parses an announcement or removal marker key.
func ParseMarker(key string) (Marker, error) {
	base, remove := strings.CutSuffix(key, RemoveSuffix)
	nanos, id, err := ParseAnnounceKey(base)
	if err != nil {
		return Marker{}, err
	}
	return Marker{Nanos: nanos, ID: id, Remove: remove}, nil
}

// ParseAnnounceKey splits an announcement marker key into its time (Unix
// nanoseconds) and ID.
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

// AnnounceRemoval tells the producers watching bucket that id was
// removed: call it after deleting every object of id. It writes the
// marker announce/<unix nanos>-<id>.remove (empty body); the producer
// owning id drops it from its catalog and sends a REMOVE record on the
// fresh lane, on which the trainer forgets it.
func AnnounceRemoval(ctx context.Context, mc *minio.Client, bucket string, id uint64) error {
	key := RemovalKey(time.Now(), id)
	_, err := mc.PutObject(ctx, bucket, key, bytes.NewReader(nil), 0, minio.PutObjectOptions{
		ContentType: "application/octet-stream", DisableContentSha256: true,
	})
	if err != nil {
		return fmt.Errorf("producers: announce removal of id %d: put %s/%s: %w", id, bucket, key, err)
	}
	return nil
}

// markerQueueLen bounds the marker keys from bucket notifications that
// wait for the watcher.
const markerQueueLen = 256

// watcher handles the markers: it polls announce/, and takes the markers
// that bucket notifications report (Producer.markers) as soon as they
// come. Both go through handle, with one record of the markers handled,
// so a marker is dealt with once whichever sees it first. It runs in one
// goroutine.
type watcher struct {
	p *Producer
	// newest is the time of the newest marker seen; the next poll lists
	// from newest − lookback.
	newest int64
	// handled holds the markers at or after newest − lookback that were
	// dealt with, by key → time.
	handled map[string]int64
	// removed holds, per ID, the time of the newest removal marker
	// handled, for as long as it is at or after newest − lookback: an
	// announcement older than it does not add the ID back.
	removed map[uint64]int64
	pruned  time.Time
}

func newWatcher(p *Producer, start time.Time) *watcher {
	return &watcher{p: p, newest: start.UnixNano(), handled: map[string]int64{}, removed: map[uint64]int64{}}
}

// run polls every PollInterval, and handles notified markers in between,
// until ctx ends.
func (w *watcher) run(ctx context.Context) {
	_, err := retryS3(ctx, w.p, func() (struct{}, error) { return struct{}{}, w.resendRemovals(ctx) })
	if err != nil && ctx.Err() == nil {
		w.p.log.Warn("scanning removal markers at start failed; removals before the lookback are not sent again", "err", err)
	}
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
		w.p.polls.Add(1)
		w.prune()
		for polled := false; !polled; {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				polled = true
			case key := <-w.p.markers:
				w.notified(ctx, key)
			}
		}
	}
}

// notified handles a marker a bucket notification reported. One that
// cannot be handled now (its images not listed yet, object storage
// failing) is left to the polls.
func (w *watcher) notified(ctx context.Context, key string) {
	if err := w.handle(ctx, key); err != nil && ctx.Err() == nil {
		w.p.log.Debug("handling a notified marker failed; the polls will", "key", key, "err", err)
	}
	w.p.notes.markers.Add(1)
	if time.Since(w.pruned) > time.Second {
		w.prune()
	}
}

// resendRemovals lists every marker once, at start, and sends the REMOVE
// record again of each owned ID whose newest marker is a removal older
// than the polls' lookback (the polls handle the newer ones). A REMOVE
// record that a stopped producer never got into Kafka is not lost that
// way, and the trainers treat a repeated one as a no-op; an ID announced
// again after its removal is left alone. Markers live until a bucket
// lifecycle rule expires them, and so does this safety net.
func (w *watcher) resendRemovals(ctx context.Context) error {
	p := w.p
	before := w.newest - p.cfg.AnnounceLookback.Nanoseconds()
	latest := map[uint64]Marker{}
	for obj := range p.cfg.S3.ListObjects(ctx, p.cfg.Bucket, minio.ListObjectsOptions{Prefix: AnnouncePrefix, Recursive: true}) {
		if obj.Err != nil {
			return fmt.Errorf("list %s/%s: %w", p.cfg.Bucket, AnnouncePrefix, obj.Err)
		}
		m, err := ParseMarker(obj.Key)
		if err != nil || !p.cfg.Shard.Owns(m.ID) {
			continue // a bad key is warned about by the polls
		}
		if cur, ok := latest[m.ID]; !ok || m.Nanos > cur.Nanos || (m.Nanos == cur.Nanos && m.Remove) {
			latest[m.ID] = m
		}
	}
	n := 0
	for id, m := range latest {
		if m.Remove && m.Nanos < before {
			p.removeID(ctx, id, m.Nanos, "removal marker (sent again at start)")
			n++
		}
	}
	if n > 0 {
		p.log.Info("sent the REMOVE records of earlier removals again", "ids", n)
	}
	return nil
}

// poll lists the markers since newest − lookback once.
func (w *watcher) poll(ctx context.Context) error {
	p := w.p
	from := w.newest - p.cfg.AnnounceLookback.Nanoseconds()
	opts := minio.ListObjectsOptions{Prefix: AnnouncePrefix, StartAfter: announceCursor(from), Recursive: true}
	for obj := range p.cfg.S3.ListObjects(ctx, p.cfg.Bucket, opts) {
		if obj.Err != nil {
			return fmt.Errorf("list %s/%s: %w", p.cfg.Bucket, AnnouncePrefix, obj.Err)
		}
		if err := w.handle(ctx, obj.Key); err != nil {
			return err
		}
	}
	return nil
}

// handle deals with one marker key, listed or notified, unless it was
// already: an announcement of an owned ID puts the ID into rotation
// (unless a newer removal marker of it was handled); a removal marker
// removes it; a malformed key is counted and warned about once. An
// announcement whose ID has no images listed yet is left unhandled (a
// later poll tries again) while it is younger than the lookback.
func (w *watcher) handle(ctx context.Context, key string) error {
	p := w.p
	if _, done := w.handled[key]; done {
		return nil
	}
	m, err := ParseMarker(key)
	if err != nil {
		if count, warn := p.warned.see("marker:" + key); count {
			p.badMarkers.Add(1)
			p.met.badMarkers.Inc()
			if warn {
				p.log.Warn("ignoring malformed marker", "key", key, "err", err)
			}
		}
		w.handled[key] = time.Now().UnixNano()
		return nil
	}
	w.newest = max(w.newest, m.Nanos)
	removedAt, wasRemoved := w.removed[m.ID]
	switch {
	case !p.cfg.Shard.Owns(m.ID):
	case m.Remove:
		w.removed[m.ID] = max(removedAt, m.Nanos)
		p.removeID(ctx, m.ID, m.Nanos, "removal marker")
	case wasRemoved && removedAt >= m.Nanos:
		p.log.Info("ignoring an announcement older than the id's removal", "id", m.ID, "key", key)
	default:
		names, err := listID(ctx, p.cfg.S3, p.cfg.Bucket, m.ID, p.newSkipLog())
		if err != nil {
			return err
		}
		if len(names) == 0 {
			// Images not visible yet: try again next poll, for as long as
			// the marker is younger than the lookback.
			if time.Now().UnixNano()-m.Nanos <= p.cfg.AnnounceLookback.Nanoseconds() {
				return nil
			}
			p.log.Warn("announced id has no images; ignoring the announcement", "id", m.ID, "key", key)
		} else {
			p.addID(ctx, m.ID, names, "announcement", m.Nanos)
		}
	}
	w.handled[key] = m.Nanos
	return nil
}

// prune forgets the markers and removals older than newest − lookback.
func (w *watcher) prune() {
	w.pruned = time.Now()
	limit := w.newest - w.p.cfg.AnnounceLookback.Nanoseconds()
	for k, ts := range w.handled {
		if ts < limit {
			delete(w.handled, k)
		}
	}
	for id, ts := range w.removed {
		if ts < limit {
			delete(w.removed, id)
		}
	}
}
