// Command gpu times the FFC trainer on the CUDA backend (kernels/cuda): a
// full engine step (engine.StepFFC: the gallery's moving average, gallery
// forward, pool insert and rollback, probe forward, FFC head loss over the
// Q slots, probe backward and SGD) for D = 512, B = 256 and pool sizes Q of
// 10k, 100k and 1M, with cuBLAS in FP32 and in TF32, and prints one table:
// samples/s, step ms, the FFC head's GFLOP/s and, measured in the same run
// on the head's two matrix-product shapes, plain cuBLAS sgemm GFLOP/s.
//
// It needs the cuda build tag and a GPU:
//
//	go run -tags cuda ./benchmarks/gpu
//	go run -tags cuda ./benchmarks/gpu --q 1M --steps 20 --precision tf32
//
// benchmarks/gpu/run.sh builds it, runs the kernels/cuda tests and then this
// program on a GPU machine; benchmarks/gpu/bundle.sh prepares what that
// machine needs when it has no Go toolchain or no internet. Built without
// the cuda tag it only says so and exits with status 2.
package main
