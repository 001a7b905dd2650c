package trainers

import (
	"reflect"
	"testing"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// TestPerIDMemoryBounded (issue 12, fault 8): after training on many more
// IDs than the pool holds, no map of the trainer holds more entries than
// the pool's Q slots (Trainer.trained used to grow with every ID seen).
func TestPerIDMemoryBounded(t *testing.T) {
	e, _ := embeddedEnv(t)
	const ids, steps = 120, 16 // 16 steps of 8 pairs: up to 128 insertions into a pool of 40
	e.produce(t, ids, steps*8, 0)
	tr, err := New(e.config(steps))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Run(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	st, q := tr.Stats(), tr.Settings().Pool
	if st.Inserted <= q {
		t.Fatalf("only %d insertions into a pool of %d: the test needs more IDs than slots", st.Inserted, q)
	}
	v := reflect.ValueOf(tr).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() == reflect.Map && f.Len() > q {
			t.Errorf("Trainer.%s holds %d entries after %d insertions, more than the pool's %d slots", v.Type().Field(i).Name, f.Len(), st.Inserted, q)
		}
	}
}
