// Package centers owns everything about class centers: the Dynamic Class
// Pool (pool[2][Q][D], the LRU label→slot map, the pos bits, rollback), the
// heads (FFC, full FC and Partial FC with CosFace/ArcFace margins), the
// broadcast of every center change on NATS (centers.<model>.<id>,
// centers.<model>.step.<run>) and the subscriber replica with nearest-center
// search.
//
// It computes only through kernels; it must not import producers or
// trainers.
package centers
