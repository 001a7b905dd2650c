// Command subscribe follows a model's class centers with the project's own
// replica (centers/broadcast): it verifies every update with the trainer's
// public key, keeps every ID's current center, and prints one JSON line
// per committed step.
//
//	go run ./centers/examples/subscribe --model glyphs --public-key centers.pub
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/centers/broadcast"
)

func main() {
	url := flag.String("nats", "nats://127.0.0.1:14222", "NATS URL")
	model := flag.String("model", "glyphs", "model name")
	dim := flag.Int("dim", 128, "center dimension (the trainer's --dim)")
	pubFile := flag.String("public-key", "", "the trainer's public key (ffc centers keygen); empty: nothing verified")
	steps := flag.Int64("steps", 0, "stop after this step (0: follow until Ctrl-C)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *url, *model, *dim, *pubFile, *steps); err != nil {
		fmt.Fprintln(os.Stderr, "subscribe:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, model string, dim int, pubFile string, last int64) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	codec := broadcast.NewProtoCodec(dim)
	if pubFile != "" {
		var pub ed25519.PublicKey
		if pub, err = broadcast.LoadPublicKey(pubFile); err != nil {
			return err
		}
		codec = codec.WithVerifier(pub)
	}
	rep, err := broadcast.NewReplica(js, broadcast.ReplicaOptions{Model: model, Codec: codec, Dim: dim})
	if err != nil {
		return err
	}
	defer rep.Close()
	done := make(chan error, 1)
	go func() { done <- rep.Run(ctx) }()
	enc := json.NewEncoder(os.Stdout)
	for step := int64(1); last == 0 || step <= last; step++ {
		if err := rep.WaitStep(ctx, step); err != nil { // every update of the step applied
			break
		}
		st := rep.Stats()
		if err := enc.Encode(map[string]any{"step": st.LastStep, "ids": st.IDs}); err != nil {
			return err
		}
		step = st.LastStep
	}
	stop := ctx.Err() != nil
	rep.Close()
	if err := <-done; err != nil && !stop {
		return err
	}
	return nil
}
