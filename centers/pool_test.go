package centers

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

func newBackend(t testing.TB) kernels.Backend {
	t.Helper()
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return be
}

func newPool(t testing.TB, be kernels.Backend, q, d, maxBatch int) *Pool {
	t.Helper()
	p, err := NewPool(be, PoolOptions{Slots: q, Dim: d, MaxBatch: maxBatch, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func upload(t testing.TB, be kernels.Backend, host []float32) kernels.Buffer {
	t.Helper()
	b, err := be.Alloc(len(host))
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Upload(b, host); err != nil {
		t.Fatal(err)
	}
	return b
}

func download(t *testing.T, be kernels.Backend, b kernels.Buffer, n int) []float32 {
	t.Helper()
	out := make([]float32, n)
	if err := be.Download(out, b); err != nil {
		t.Fatal(err)
	}
	return out
}

// row returns pool[r][s] from a download of the rows.
func row(rows []float32, q, d, r, s int) []float32 { return rows[(r*q+s)*d : (r*q+s+1)*d] }

func TestPoolInsertRefreshAlternation(t *testing.T) {
	be := newBackend(t)
	const q, d = 4, 3
	p := newPool(t, be, q, d, 8)
	feat := func(v float32) []float32 { return []float32{v, v + 0.5, v + 0.25} }
	g := upload(t, be, append(append(feat(1), feat(2)...), feat(3)...))

	changes, err := p.Insert(g, []int64{100, 200, 100})
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{Kind: Inserted, Label: 100, Slot: 0, Row: 0, Index: 0},
		{Kind: Inserted, Label: 200, Slot: 1, Row: 0, Index: 1},
		{Kind: Refreshed, Label: 100, Slot: 0, Row: 1, Index: 2}, // same batch: inserted, then refreshed
	}
	if !reflect.DeepEqual(changes, want) {
		t.Fatalf("changes %+v\nwant %+v", changes, want)
	}
	rows := download(t, be, p.Rows(), 2*q*d)
	if !reflect.DeepEqual(row(rows, q, d, 0, 0), feat(1)) || !reflect.DeepEqual(row(rows, q, d, 1, 0), feat(3)) || !reflect.DeepEqual(row(rows, q, d, 0, 1), feat(2)) {
		t.Fatalf("rows after insert: %v", rows)
	}
	if p.Pos(0) != 0 || p.Pos(1) != 1 {
		t.Errorf("pos = %d,%d, want 0,1", p.Pos(0), p.Pos(1))
	}
	if got := p.RefreshedSlots(); !reflect.DeepEqual(got, []int32{0}) {
		t.Errorf("refreshed %v, want [0]", got)
	}

	// Next pass: refreshing 100 again writes row 0 (pos alternates).
	if err := p.BeginPass(); err != nil {
		t.Fatal(err)
	}
	g2 := upload(t, be, feat(9))
	if _, err := p.Insert(g2, []int64{100}); err != nil {
		t.Fatal(err)
	}
	rows = download(t, be, p.Rows(), 2*q*d)
	if !reflect.DeepEqual(row(rows, q, d, 0, 0), feat(9)) || !reflect.DeepEqual(row(rows, q, d, 1, 0), feat(3)) || p.Pos(0) != 1 {
		t.Fatalf("second refresh should write row 0 and keep row 1: %v pos %d", rows[:2*d], p.Pos(0))
	}
}

func TestPoolEvictsAndReportsIt(t *testing.T) {
	be := newBackend(t)
	p := newPool(t, be, 2, 2, 4)
	g := upload(t, be, make([]float32, 3*2))
	changes, err := p.Insert(g, []int64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	last := changes[len(changes)-2:]
	if last[0].Kind != Evicted || last[0].Label != 1 || last[1].Kind != Inserted || last[1].Label != 3 || last[1].Slot != last[0].Slot {
		t.Fatalf("changes %+v: want label 1 evicted and 3 inserted into its slot", changes)
	}
}

type poolState struct {
	rows      []float32
	order     []int64
	pos       []uint8
	refreshed []int32
}

func poolSnap(t *testing.T, be kernels.Backend, p *Pool) poolState {
	return poolState{
		rows:      download(t, be, p.Rows(), 2*p.Slots()*p.Dim()),
		order:     p.LRU().Order(),
		pos:       append([]uint8(nil), p.pos...),
		refreshed: append([]int32{}, p.RefreshedSlots()...),
	}
}

func TestPoolRollbackExact(t *testing.T) {
	be := newBackend(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, q := range []int{3, 8, 33} {
		const d = 5
		p := newPool(t, be, q, d, 24)
		for round := 0; round < 60; round++ {
			// Permanent inserts so the state is rich: full, refreshed rows.
			if err := p.BeginPass(); err != nil {
				t.Fatal(err)
			}
			insertRandom(t, be, p, rng, 1+rng.IntN(6), 2*q)
			before := poolSnap(t, be, p)
			p.Mark()
			for k := 0; k < 1+rng.IntN(3); k++ {
				insertRandom(t, be, p, rng, 1+rng.IntN(8), 2*q)
			}
			if err := p.Rollback(); err != nil {
				t.Fatal(err)
			}
			after := poolSnap(t, be, p)
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("q=%d round %d: rollback did not restore the exact state\nbefore %+v\nafter  %+v", q, round, before, after)
			}
		}
	}
}

func insertRandom(t *testing.T, be kernels.Backend, p *Pool, rng *rand.Rand, n, labels int) {
	t.Helper()
	host := make([]float32, n*p.Dim())
	for i := range host {
		host[i] = rng.Float32()
	}
	lab := make([]int64, n)
	for i := range lab {
		lab[i] = int64(rng.IntN(labels))
	}
	g := upload(t, be, host)
	if _, err := p.Insert(g, lab); err != nil {
		t.Fatal(err)
	}
}

func TestPoolGatherRefreshed(t *testing.T) {
	be := newBackend(t)
	const q, d = 5, 4
	p := newPool(t, be, q, d, 8)
	rng := rand.New(rand.NewPCG(5, 6))
	insertRandom(t, be, p, rng, 6, 4) // 6 features over 4 labels: some refreshed
	ref := p.RefreshedSlots()
	if len(ref) == 0 {
		t.Fatal("test needs refreshed slots")
	}
	before := download(t, be, p.Rows(), 2*q*d)
	r, slots, rows0, rows1, err := p.GatherRefreshed()
	if err != nil {
		t.Fatal(err)
	}
	if r != len(ref) {
		t.Fatalf("GatherRefreshed: %d slots, want %d", r, len(ref))
	}
	got := make([]int32, r)
	if err := be.DownloadIndex(got, slots); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ref) {
		t.Fatalf("slots %v, want %v", got, ref)
	}
	g0, g1 := download(t, be, rows0, r*d), download(t, be, rows1, r*d)
	for i, s := range ref {
		if !reflect.DeepEqual(g0[i*d:(i+1)*d], row(before, q, d, 0, int(s))) {
			t.Fatalf("slot %d: rows0 %v, want pool[0] %v", s, g0[i*d:(i+1)*d], row(before, q, d, 0, int(s)))
		}
		if !reflect.DeepEqual(g1[i*d:(i+1)*d], row(before, q, d, 1, int(s))) {
			t.Fatalf("slot %d: rows1 %v, want pool[1] %v", s, g1[i*d:(i+1)*d], row(before, q, d, 1, int(s)))
		}
	}
	if after := download(t, be, p.Rows(), 2*q*d); !reflect.DeepEqual(after, before) {
		t.Fatal("GatherRefreshed changed the pool rows")
	}
	if err := p.BeginPass(); err != nil {
		t.Fatal(err)
	}
	if r, _, _, _, err := p.GatherRefreshed(); err != nil || r != 0 {
		t.Fatalf("after BeginPass: %d refreshed slots, %v; want 0", r, err)
	}
}

func TestPoolStartsWithUnitRows(t *testing.T) {
	be := newBackend(t)
	const q, d = 7, 16
	p := newPool(t, be, q, d, 2)
	rows := download(t, be, p.Rows(), 2*q*d)
	for r := 0; r < 2*q; r++ {
		var ss float64
		for _, v := range rows[r*d : (r+1)*d] {
			ss += float64(v) * float64(v)
		}
		if math.Abs(ss-1) > 1e-5 {
			t.Fatalf("row %d has squared norm %v", r, ss)
		}
	}
}

func TestPoolErrors(t *testing.T) {
	be := newBackend(t)
	if _, err := NewPool(be, PoolOptions{Slots: 0, Dim: 4, MaxBatch: 1}); err == nil {
		t.Error("zero slots accepted")
	}
	p := newPool(t, be, 4, 2, 2)
	if _, err := p.Insert(upload(t, be, make([]float32, 6)), []int64{1, 2, 3}); err == nil {
		t.Error("insert above max batch accepted")
	}
	if err := p.Rollback(); err == nil {
		t.Error("Rollback without Mark accepted")
	}
}

func TestPoolStateRoundTrip(t *testing.T) {
	be := newBackend(t)
	rng := rand.New(rand.NewPCG(9, 9))
	const q, d = 6, 3
	p := newPool(t, be, q, d, 16)
	for i := 0; i < 5; i++ {
		if err := p.BeginPass(); err != nil {
			t.Fatal(err)
		}
		insertRandom(t, be, p, rng, 4, 9) // with evictions
	}
	if err := p.BeginPass(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.SaveState(&buf); err != nil {
		t.Fatal(err)
	}
	saved := buf.Bytes()
	p2, err := NewPool(be, PoolOptions{Slots: q, Dim: d, MaxBatch: 16, Seed: 99})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if err := p2.LoadState(bytes.NewReader(saved)); err != nil {
		t.Fatal(err)
	}
	if a, b := poolSnap(t, be, p), poolSnap(t, be, p2); !reflect.DeepEqual(a, b) {
		t.Fatalf("restored pool differs:\n%+v\n%+v", a, b)
	}
	// Both evolve identically afterwards (the LRU slots and order match).
	for _, pl := range []*Pool{p, p2} {
		g := upload(t, be, []float32{1, 2, 3, 4, 5, 6})
		if _, err := pl.Insert(g, []int64{100, 3}); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := poolSnap(t, be, p), poolSnap(t, be, p2); !reflect.DeepEqual(a, b) {
		t.Fatal("pools diverge after the same insert")
	}
	// Corruption, truncation and a different shape are rejected.
	bad := append([]byte(nil), saved...)
	bad[len(bad)/2] ^= 1
	if err := p2.LoadState(bytes.NewReader(bad)); err == nil {
		t.Error("corrupt state accepted")
	}
	if err := p2.LoadState(bytes.NewReader(saved[:len(saved)-9])); err == nil {
		t.Error("truncated state accepted")
	}
	p3 := newPool(t, be, q+1, d, 4)
	if err := p3.LoadState(bytes.NewReader(saved)); err == nil {
		t.Error("state of another shape accepted")
	}
}
