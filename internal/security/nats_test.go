package security_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// natsConn connects as sec; violations collects the server's
// permission errors.
func natsConn(t *testing.T, tg target, sec security.NATS) (*nats.Conn, *violations) {
	t.Helper()
	opts, err := sec.Options()
	if err != nil {
		t.Fatal(err)
	}
	v := &violations{}
	nc, err := nats.Connect(tg.natsURL, append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { v.add(err) }))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, v
}

type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) add(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

// seen reports whether a permission violation naming subject came.
func (v *violations) seen(subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.errs {
		if strings.Contains(strings.ToLower(e), "permissions violation") && strings.Contains(e, subject) {
			return true
		}
	}
	return false
}

// testNATSPrivileges: only the trainer publishes centers; the subscriber
// reads them and publishes nothing; the producer has no NATS user.
func testNATSPrivileges(t *testing.T, tg target) {
	ctx := testutil.Context(t)
	model := "sec" + tg.sfx
	trainer, _ := natsConn(t, tg, tg.m.NATSClient(security.RoleTrainer, false))
	tjs, err := jetstream.New(trainer)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := tjs.CreateStream(ctx, jetstream.StreamConfig{Name: "CENTERS_" + model, Subjects: []string{"centers." + model + ".>"}, MaxMsgsPerSubject: 1})
	if err != nil {
		t.Fatalf("trainer creating the centers stream: %v", err)
	}
	subject := "centers." + model + ".1"
	if _, err := tjs.Publish(ctx, subject, []byte("real")); err != nil {
		t.Fatalf("trainer publishing %s: %v", subject, err)
	}

	sub, v := natsConn(t, tg, tg.m.NATSClient(security.RoleSubscriber, false))
	sjs, err := jetstream.New(sub)
	if err != nil {
		t.Fatal(err)
	}
	sstream, err := sjs.Stream(ctx, "CENTERS_"+model)
	if err != nil {
		t.Fatalf("subscriber reading the stream's info: %v", err)
	}
	if m, err := sstream.GetLastMsgForSubject(ctx, subject); err != nil || string(m.Data) != "real" {
		t.Fatalf("subscriber reading %s: %v", subject, err)
	}
	// A forged center and step commit, and anything else, are refused.
	for _, s := range []string{subject, "centers." + model + ".step", "samples.anything"} {
		if err := sub.Publish(s, []byte("forged")); err != nil {
			t.Fatal(err)
		}
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{subject, "centers." + model + ".step", "samples.anything"} {
		testutil.WaitTrue(t, "a permissions violation for "+s, func() bool { return v.seen(s) })
	}
	// The refused messages were not stored: the trainer's is still the
	// last on its subject.
	if m, err := stream.GetLastMsgForSubject(ctx, subject); err != nil {
		t.Error(err)
	} else if string(m.Data) != "real" {
		t.Errorf("after the subscriber's attempts, %s holds %q, want the trainer's", subject, m.Data)
	}
	// The producer's certificate and no nkey: not a NATS user.
	opts, err := security.NATS{TLS: security.TLS{CAFile: tg.m.CA(), CertFile: tg.m.ClientCert(security.RoleProducer), KeyFile: tg.m.ClientKey(security.RoleProducer)}}.Options()
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(tg.natsURL, opts...); err == nil {
		nc.Close()
		t.Error("nats: the producer's certificate without an nkey connected")
	} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("nats: producer refused with %v, want an authorization error", err)
	}
}
