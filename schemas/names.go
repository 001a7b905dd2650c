package schemas

import (
	"fmt"
	"regexp"
	"strconv"
)

// The one home of the names the stages meet on: Kafka topics and the
// trainers' consumer group (defaults), and the NATS JetStream stream and
// subjects of a model's centers.

// Default Kafka names, shared by producers, trainers, the commands and the
// deploy manifests.
const (
	// TopicByID is the id stream: IDPair messages, key = the ID.
	TopicByID = "samples.byid"
	// TopicInstance is the instance stream: Sample messages, key = the
	// image's object key.
	TopicInstance = "samples.instance"
	// TopicFresh is the fresh lane: IDPair messages of newly announced
	// IDs (announced_unix_nano set) and control records (op REMOVE,
	// RESTORE), key = the ID. Trainers drain it before the other topics,
	// and producers write it outside the id and instance streams' lead.
	TopicFresh = "samples.fresh"
	// TopicDeadLetter receives rejected objects and messages with their
	// reason in the headers.
	TopicDeadLetter = "samples.deadletter"
	// TrainerGroup is the trainers' consumer group, whose committed
	// offsets the producers' flow control measures against.
	TrainerGroup = "ffc-trainer"
)

var modelName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateModel reports a model name that cannot be a subject token.
func ValidateModel(model string) error {
	if !modelName.MatchString(model) {
		return fmt.Errorf("model name %q: want 1–64 of A–Z a–z 0–9 _ -", model)
	}
	return nil
}

// CentersStream is the JetStream stream of a model's centers.
func CentersStream(model string) string { return "CENTERS_" + model }

// CentersSubjects matches every subject of a model's stream.
func CentersSubjects(model string) string { return "centers." + model + ".>" }

// CenterSubject carries the centers of one ID (the stream keeps the last).
func CenterSubject(model string, id uint64) string {
	return "centers." + model + "." + strconv.FormatUint(id, 10)
}

// EvictSubject carries the eviction of one ID from the trainer's pool.
func EvictSubject(model string, id uint64) string {
	return "centers." + model + ".evicted." + strconv.FormatUint(id, 10)
}

// StepSubject is the fence subject of a model: the step records (START,
// BEGIN, COMMIT) of the trainer that holds the current epoch, each
// published with the expected last subject sequence of the previous one
// (the stream keeps the last).
func StepSubject(model string) string { return "centers." + model + ".step" }

// StepPrefix starts every step-record subject of a model: StepSubject and
// the per-run commit subjects (centers.<model>.step.<run>) of streams
// written before epochs.
func StepPrefix(model string) string { return "centers." + model + ".step" }

// CentersPrefix starts every subject of a model.
func CentersPrefix(model string) string { return "centers." + model + "." }
