package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"

	"github.com/ffc-stream/ffc/internal/dataset/objstore"
	"github.com/ffc-stream/ffc/internal/dataset/synth"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// idBase is the first storage ID: IDs are idBase .. idBase+ids-1.
const idBase = 1000

// harnessSource names the messages this program writes.
const harnessSource = "chaos-harness"

// object is one uploaded image.
type object struct {
	key string
	png []byte
}

// dataset is what the run uploaded: per ID its images.
type dataset struct {
	ids    []uint64
	images map[uint64][]object
}

// upload generates ids synthetic identities of 3 to 5 32×32 images and
// puts them into bucket (ids/<id>/<n>.png).
func upload(ctx context.Context, mc *minio.Client, bucket string, ids int, seed uint64) (*dataset, error) {
	g, err := synth.New(synth.Options{Seed: seed, IDs: uint64(ids), Alpha: 1, Min: 3, Max: 5})
	if err != nil {
		return nil, fmt.Errorf("synthetic identities: %w", err)
	}
	d := &dataset{images: map[uint64][]object{}}
	for i := range uint64(ids) {
		id := idBase + i
		d.ids = append(d.ids, id)
		for k := range g.InstancesOf(i) {
			pix, err := g.Image(i, k)
			if err != nil {
				return nil, fmt.Errorf("image %d of ID %d: %w", k, id, err)
			}
			b, err := objstore.EncodePNG(pix, g.ImageSize())
			if err != nil {
				return nil, fmt.Errorf("image %d of ID %d: %w", k, id, err)
			}
			d.images[id] = append(d.images[id], object{key: objstore.ImageKey(id, k), png: b})
		}
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(8)
	for _, id := range d.ids {
		for _, im := range d.images[id] {
			eg.Go(func() error {
				_, err := mc.PutObject(ectx, bucket, im.key, bytes.NewReader(im.png), int64(len(im.png)),
					minio.PutObjectOptions{ContentType: "image/png", DisableContentSha256: true})
				if err != nil {
					return fmt.Errorf("put %s: %w", im.key, err)
				}
				return nil
			})
		}
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	return d, nil
}

// numImages counts the uploaded images.
func (d *dataset) numImages() int {
	n := 0
	for _, ims := range d.images {
		n += len(ims)
	}
	return n
}

// pair returns a valid IDPair of a random ID.
func (d *dataset) pair(rng *rand.Rand) *ffcpb.IDPair {
	id := d.ids[rng.IntN(len(d.ids))]
	ims := d.images[id]
	a := rng.IntN(len(ims))
	b := (a + 1 + rng.IntN(len(ims)-1)) % len(ims)
	return &ffcpb.IDPair{Version: schemas.CurrentVersion, Id: id, Source: harnessSource,
		First: &ffcpb.Image{Key: ims[a].key, Png: ims[a].png}, Second: &ffcpb.Image{Key: ims[b].key, Png: ims[b].png}}
}

// sample returns a valid Sample of a random image.
func (d *dataset) sample(rng *rand.Rand) *ffcpb.Sample {
	id := d.ids[rng.IntN(len(d.ids))]
	im := d.images[id][rng.IntN(len(d.images[id]))]
	return &ffcpb.Sample{Version: schemas.CurrentVersion, Id: id, ImageKey: im.key, ImagePng: im.png, Source: harnessSource}
}

// valid returns a valid message for topic kind (byid or instance) with
// its Kafka key, as the producer keys them.
func (d *dataset) valid(rng *rand.Rand, byID bool) (key, value []byte, err error) {
	if byID {
		p := d.pair(rng)
		value, err = schemas.EncodeIDPair(p)
		return []byte(strconv.FormatUint(p.GetId(), 10)), value, err
	}
	s := d.sample(rng)
	value, err = schemas.EncodeSample(s)
	return []byte(s.GetImageKey()), value, err
}
