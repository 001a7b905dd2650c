package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// assertDemoCleaned checks, on the real services of args (realArgs),
// that the demo run s deleted its bucket, topics and centers stream.
func assertDemoCleaned(t *testing.T, s demoSummary, args []string) {
	t.Helper()
	ctx := testutil.Context(t)
	flag := func(name string) string {
		for i, a := range args[:len(args)-1] {
			if a == name {
				return args[i+1]
			}
		}
		t.Fatalf("%s not in %v", name, args)
		return ""
	}
	secret, err := os.ReadFile(flag("--s3-secret-key-file"))
	if err != nil {
		t.Fatal(err)
	}
	ht := &http.Transport{}
	defer ht.CloseIdleConnections()
	mc, err := minio.New(flag("--s3-endpoint"), &minio.Options{Transport: ht,
		Creds: credentials.NewStaticV4(flag("--s3-access-key"), string(secret), "")})
	if err != nil {
		t.Fatal(err)
	}
	bucket := "ffc-demo-" + s.Run
	if ok, err := mc.BucketExists(ctx, bucket); err != nil || ok {
		t.Errorf("bucket %s exists after the demo: %v, %v", bucket, ok, err)
	}
	kt := &kafka.Transport{}
	defer kt.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(strings.Split(flag("--kafka-brokers"), ",")...), Transport: kt}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range md.Topics {
		if strings.HasPrefix(tp.Name, "demo-"+s.Run+".") {
			t.Errorf("topic %s exists after the demo", tp.Name)
		}
	}
	nc, err := nats.Connect(flag("--nats-url"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(context.WithoutCancel(ctx), broadcast.StreamName(s.Model)); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("centers stream of %s after the demo: %v, want not found", s.Model, err)
	}
}
