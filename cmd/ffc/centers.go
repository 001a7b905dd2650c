package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/trainers/settings"
)

type centersFlags struct {
	natsURL string
	nats    natsAuth
	model   string
	dim     int
	timeout time.Duration
	// publicKey is the trainer's public key file: updates and commits not
	// signed by it are rejected (empty: nothing is verified).
	publicKey string
	app       *app
}

func newCentersCmd(a *app) *cobra.Command {
	f := &centersFlags{app: a}
	cmd := &cobra.Command{
		Use:   "centers",
		Short: "Follow, read and search the class centers a trainer publishes on NATS",
		Long: `The trainer publishes every center change on NATS JetStream: the center of
ID <id> of model <model> on centers.<model>.<id> (the stream keeps the last
value of each, also after the ID left the pool), evictions on
centers.<model>.evicted.<id>, and a commit per step on centers.<model>.step.<run>.
These commands keep a replica of all centers (bootstrap from the stream,
then live) and use it.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.natsURL, "nats-url", "nats://127.0.0.1:14222", "NATS server URL (env FFC_NATS_URL)")
	f.nats.addFlags(pf)
	pf.StringVar(&f.model, "model", "glyphs", "model name")
	pf.IntVar(&f.dim, "dim", settings.DefaultDim, "center dimension of the model (the trainer's --dim)")
	pf.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up bootstrapping after this long")
	pf.StringVar(&f.publicKey, "centers-public-key", "", "the trainer's ed25519 public key (PEM file; ffc centers keygen): every center update and step commit not signed by it is rejected and counted (env FFC_CENTERS_PUBLIC_KEY; empty: nothing is verified, and a warning says so)")
	cmd.AddCommand(newCentersKeygenCmd(a),
		&cobra.Command{
			Use: "watch", Short: "Print every step commit and center count as they arrive, until Ctrl-C",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return withReplica(cmd.Context(), f, func(ctx context.Context, r *broadcast.Replica) error {
					last := broadcast.Version{Step: -2}
					tick := time.NewTicker(250 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-ctx.Done():
							return nil
						case <-tick.C:
							if st := r.Stats(); (broadcast.Version{Epoch: st.Epoch, Step: st.LastStep}) != last {
								last = broadcast.Version{Epoch: st.Epoch, Step: st.LastStep}
								fmt.Fprintf(a.stdout, "%s epoch %d step %d: %d centers (%d applied, %d stale, %d rejected, %d evictions, %d pending, %d dropped)\n",
									time.Now().Format(time.TimeOnly), st.Epoch, st.LastStep, st.IDs, st.Applied, st.Stale, st.Rejected, st.Evictions, st.Pending, st.Dropped)
							}
						}
					}
				})
			},
		},
		&cobra.Command{
			Use: "get ID...", Short: "Print the centers of IDs as JSON (an ID: " + idForms + ")",
			Args: cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withReplica(cmd.Context(), f, func(_ context.Context, r *broadcast.Replica) error {
					enc := json.NewEncoder(a.stdout)
					for _, s := range args {
						id, err := parseID(s)
						if err != nil {
							return fmt.Errorf("get: %w", err)
						}
						c, ok := r.Get(id)
						if !ok {
							return fmt.Errorf("get: no center for ID %d", id)
						}
						if err := enc.Encode(c); err != nil {
							return err
						}
					}
					return nil
				})
			},
		},
		newCentersSearchCmd(a, f),
	)
	return cmd
}

func newCentersSearchCmd(a *app, f *centersFlags) *cobra.Command {
	var k int
	var ofID uint64
	var vec string
	cmd := &cobra.Command{
		Use:   "search",
		Short: "Exact nearest centers of a vector (--vector) or of an ID's center (--of)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withReplica(cmd.Context(), f, func(_ context.Context, r *broadcast.Replica) error {
				var q []float32
				switch {
				case vec != "":
					for _, s := range strings.Split(vec, ",") {
						v, err := strconv.ParseFloat(strings.TrimSpace(s), 32)
						if err != nil {
							return fmt.Errorf("search: --vector: %w", err)
						}
						q = append(q, float32(v))
					}
				case cmd.Flags().Changed("of"):
					c, ok := r.Get(ofID)
					if !ok {
						return fmt.Errorf("search: no center for ID %d", ofID)
					}
					q = c.Vector
				default:
					return errors.New("search: give --vector or --of")
				}
				ms, err := r.Search(q, k)
				if err != nil {
					return err
				}
				for i, m := range ms {
					fmt.Fprintf(a.stdout, "%d\tid %d\tcos %.4f\n", i+1, m.ID, m.Score)
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&k, "k", 5, "number of results")
	cmd.Flags().Uint64Var(&ofID, "of", 0, "search with the center of this ID")
	cmd.Flags().StringVar(&vec, "vector", "", "query vector, comma-separated floats of the model's dimension")
	return cmd
}

// withReplica connects, bootstraps a replica (a stage of its own) and runs
// fn while the replica follows the stream; the replica is stopped and
// joined before it returns.
func withReplica(ctx context.Context, f *centersFlags, fn func(context.Context, *broadcast.Replica) error) (err error) {
	if err := resolveSecret(&f.nats.sec.Password, f.nats.passwordFile, "nats password"); err != nil {
		return fmt.Errorf("centers: %w", err)
	}
	nc, js, err := natsConn(f.natsURL, "ffc-centers", f.nats.sec, f.app.log)
	if err != nil {
		return fmt.Errorf("centers: %w", err)
	}
	defer nc.Close()
	codec := broadcast.NewProtoCodec(f.dim)
	if f.publicKey == "" {
		f.app.log.Warn("centers: no --centers-public-key: center updates and step commits are not verified; anyone who can publish on NATS can forge them")
	} else {
		key, err := broadcast.LoadPublicKey(f.publicKey)
		if err != nil {
			return fmt.Errorf("centers: %w", err)
		}
		codec = codec.WithVerifier(key)
	}
	r, err := broadcast.NewReplica(js, broadcast.ReplicaOptions{Model: f.model, Codec: codec, Dim: f.dim, Log: f.app.log})
	if err != nil {
		return err
	}
	g := stage.NewGroup(ctx, nil)
	defer func() { err = errors.Join(err, g.Close()) }()
	g.Go("replica", r)
	wctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if err := g.WaitReady(wctx, "replica"); err != nil {
		return fmt.Errorf("centers: model %s: %w", f.model, err)
	}
	if err := fn(g.Context(), r); err != nil {
		return err
	}
	return g.Err()
}

// newCentersKeygenCmd writes a key pair for signed centers.
func newCentersKeygenCmd(a *app) *cobra.Command {
	var priv, pub string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Write a new ed25519 key pair for signed centers (the trainer's private key, the subscribers' public key)",
		Long: `keygen writes a new ed25519 key pair in the formats OpenSSL writes: the
private key (PKCS#8 PEM, mode 0600, never overwritten) for the trainer's
--centers-signing-key, and the public key (PKIX PEM) for the subscribers'
--centers-public-key. The trainer signs every center update and step
commit it publishes; a subscriber with the public key rejects whatever is
not signed by it, even from someone who can publish on NATS.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := broadcast.GenerateKeys(priv, pub); err != nil {
				return fmt.Errorf("centers keygen: %w", err)
			}
			return printJSON(a.stdout, map[string]string{"private_key": priv, "public_key": pub})
		},
	}
	cmd.Flags().StringVar(&priv, "private", "centers.key", "file for the private key (the trainer's)")
	cmd.Flags().StringVar(&pub, "public", "centers.pub", "file for the public key (the subscribers')")
	return cmd
}
