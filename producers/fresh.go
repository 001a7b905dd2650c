package producers

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// The fresh lane. A new ID joins the id rotation ahead of the uniform
// order, but the id stream is held by flow control as soon as its lead
// (MaxLead, thousands of messages) is reached, and the trainers consume
// it in order: a new ID's first pair would wait behind the whole lead. So
// whenever an ID is put into rotation for the first time (announcement,
// bucket notification, rescan) FreshPairs pairs of it also go to
// TopicFresh, with AnnouncedUnixNano set, through a gate of their own
// (FreshMaxLead, measured against the same trainer group): a full id
// stream never delays them. A removal marker sends a REMOVE record the
// same way. Records are keyed by the ID (the id stream's partitioning).
//
// The work is done off the watcher by Concurrency workers, each with a
// bounded queue; an ID always goes to the same worker, so that its pairs
// and its REMOVE record are written in the order they were asked for. A
// full queue blocks whoever asks (the watcher, a rescan): nothing is
// dropped. A record Kafka refuses goes to the outbox like any other and
// is retried for as long as Run runs.

// freshQueueLen bounds each fresh worker's queue.
const freshQueueLen = 64

// freshJob asks the fresh lane for the pairs of a new ID, or (remove)
// for the REMOVE record of a removed one; nanos is the announcement's (or
// the removal's) time, Unix nanoseconds.
type freshJob struct {
	id     uint64
	nanos  int64
	remove bool
}

func newFreshQueues(n int) []chan freshJob {
	qs := make([]chan freshJob, n)
	for i := range qs {
		qs[i] = make(chan freshJob, freshQueueLen)
	}
	return qs
}

// enqueueFresh hands j to the worker of its ID, waiting while that
// worker's queue is full; false when ctx ended first.
func (p *Producer) enqueueFresh(ctx context.Context, j freshJob) bool {
	q := p.fresh[j.id%uint64(len(p.fresh))]
	select {
	case q <- j:
		return true
	default:
	}
	p.log.Debug("fresh lane queue full; waiting", "id", j.id)
	select {
	case q <- j:
		return true
	case <-ctx.Done():
		return false
	}
}

// runFresh runs the fresh workers until ctx ends.
func (p *Producer) runFresh(ctx context.Context) {
	var wg sync.WaitGroup
	for w, q := range p.fresh {
		wg.Add(1)
		rng := rand.New(rand.NewPCG(p.seed, uint64(2000+w)))
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-q:
					if j.remove {
						p.sendRemove(ctx, j)
					} else {
						p.sendFreshPairs(ctx, j, rng)
					}
				}
			}
		}()
	}
	wg.Wait()
}

// sendFreshPairs writes FreshPairs pairs of a new ID to the fresh lane.
// An ID that left the catalog meanwhile (removed, or every image bad) gets
// none; one whose images cannot be read (object storage failing past its
// retries) gets fewer: it is in rotation all the same.
func (p *Producer) sendFreshPairs(ctx context.Context, j freshJob, rng *rand.Rand) {
	for i := range p.cfg.FreshPairs {
		if p.gFresh.admit(ctx) != nil {
			return
		}
		msg, ok, err := p.pairMessage(ctx, j.id, rng, p.cfg.TopicFresh, j.nanos)
		if err != nil || !ok {
			p.gFresh.release()
			if err != nil && ctx.Err() == nil {
				p.log.Warn("fresh pair of a new id not sent; it is in rotation all the same", "id", j.id, "sent", i, "err", err)
			}
			return
		}
		p.freshPairs.Add(1)
		p.met.freshPairs.Inc()
		p.send(ctx, p.gFresh, msg)
	}
}

// sendRemove writes the REMOVE record of a removed ID to the fresh lane.
func (p *Producer) sendRemove(ctx context.Context, j freshJob) {
	if p.gFresh.admit(ctx) != nil {
		// Stopping: the marker is handled again by the next run when it
		// is still within AnnounceLookback.
		p.log.Warn("REMOVE record not sent: stopping", "id", j.id)
		return
	}
	v, err := schemas.EncodeIDPair(&ffcpb.IDPair{
		Id:                j.id,
		Op:                ffcpb.IDPair_REMOVE,
		AnnouncedUnixNano: j.nanos,
		Sequence:          p.seqByID.Add(1),
		Source:            p.cfg.Source,
	})
	if err != nil {
		p.gFresh.release()
		p.log.Error("REMOVE record not encoded", "id", j.id, "err", err)
		return
	}
	p.send(ctx, p.gFresh, kafka.Message{Topic: p.cfg.TopicFresh, Key: []byte(strconv.FormatUint(j.id, 10)), Value: v, Time: time.Now()})
}

// removeID handles the removal marker of an owned ID written at nanos:
// the ID leaves the catalog (so neither stream samples it again) and a
// REMOVE record goes to the fresh lane, also when the catalog did not
// hold it (a trainer may).
func (p *Producer) removeID(ctx context.Context, id uint64, nanos int64, why string) {
	held := p.cat.remove(id)
	p.removedIDs.Add(1)
	p.met.removedIDs.Inc()
	p.log.Info("id removed", "id", id, "in_catalog", held, "by", why)
	p.enqueueFresh(ctx, freshJob{id: id, nanos: nanos, remove: true})
}

// maxWarnedKeys bounds the bad keys remembered to warn about each once.
const maxWarnedKeys = 10000

// onceSet remembers up to max keys, to count and warn about each bad key
// once per run. Past max distinct keys it remembers no more: a key it
// does not hold is then counted every time it is seen, and not warned
// about (bounded memory wins over exact counts past max bad keys).
type onceSet struct {
	mu   sync.Mutex
	seen map[string]struct{}
	max  int
}

func newOnceSet(max int) *onceSet { return &onceSet{seen: map[string]struct{}{}, max: max} }

// see reports whether key is to be counted (not seen before, or the set
// is full) and warned about (the first time, while the set has room).
func (s *onceSet) see(key string) (count, warn bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[key]; ok {
		return false, false
	}
	if len(s.seen) >= s.max {
		return true, false
	}
	s.seen[key] = struct{}{}
	return true, true
}
