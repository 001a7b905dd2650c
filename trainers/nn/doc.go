// Package nn owns the networks of the FFC trainer: the layers (each with a
// forward and a backward pass), the backbones built from them (the
// yardstick IR-ResNet for 1×32×32 glyphs and an MLP for feature vectors),
// their learnable parameters and non-learnable state, the SGD learning-rate
// schedule, the gallery's moving average, and checkpointing of parameters.
//
// Every numeric operation on buffers goes through [kernels.Backend]; the
// package imports nothing else of the project, so the same networks run on
// the CPU backend and on a GPU backend. Host code only initialises weights
// (seeded, deterministic) and reads or writes checkpoints.
//
// # Memory and layout
//
// A layer allocates its output (and, unless built forward-only, its input
// gradient) for Config.MaxBatch samples when it is constructed, so a
// training step allocates nothing on the backend. Outputs are owned by the
// layer and valid until its next Forward; a Forward with n samples fills
// their first n·OutLen elements. In the nets ([NewIRResNet], [NewMLP]) the
// values that live only from one layer to the next share a ring of 8
// buffers of the largest activation instead: the outputs of a forward-only
// net (the gallery) and the input gradients of a training net. A training
// net's outputs are all kept, since Backward reads them.
//
// Convolutions are lowered to GEMM and produce the CNHW layout
// ([channel][batch][height][width]); the IR-ResNet keeps every activation
// in CNHW and transposes once, in [Flatten], before the final Linear
// layer. The network input is NCHW, which for one input channel is the
// same memory as CNHW. On a backend that is a kernels.Convolver (the CPU
// backend) a convolution calls ConvForward and ConvBackward, which lower a
// few images at a time into cache-sized blocks or convolve them directly,
// and holds no column matrix. On other backends (CUDA) it uses Im2Col/Col2Im and Gemm: by
// default each convolution keeps its column matrix from Forward for
// Backward (which then reuses it for the column gradient); forward-only
// nets, and nets built with IRResNetOptions.RecomputeColumns, share one
// column buffer between their convolutions and lower the input again in
// Backward.
//
// # Networks
//
// A [Net] maps n inputs of InLen floats to n×Dim L2-normalised embeddings.
// Forward takes already-scaled floats: for 8-bit images use [AppendScaled]
// (or [ScaleImages]), (x/255 − 0.5)/0.5, the one place that scaling is
// written. Backward takes dL/d(embeddings) of the last Forward
// (which must have had train = true) and accumulates parameter gradients
// (Param.G += ...), as PyTorch does, so two forward/backward pairs add up;
// [ZeroGrads] before a step.
//
// # BatchNorm and the gallery
//
// BatchNorm in train mode normalises with the batch statistics and updates
// its running statistics (PyTorch's momentum 0.1, unbiased running
// variance); in eval mode it uses the running statistics. The running
// statistics are a net's State (not Params): they are saved by
// [SaveParams] when passed, and copied by [CopyParams], but never averaged.
// The FFC gallery net follows the authors' reference, which runs the
// gallery in train mode: the trainer copies the probe's Params and State
// into the gallery once at start, then each iteration applies
// [MovingAverage] to Params only and calls the gallery's Forward with
// train = true, so gallery features use the batch statistics and the
// gallery's running statistics track its own batches.
//
// # Weight decay
//
// Param.Decay is true for convolution and linear weights and false for
// biases, BatchNorm gamma/beta and PReLU slopes (the common "no decay on
// 1-d parameters" rule); the authors' reference decays every parameter, and
// a trainer that wants that sets Decay on all of them.
package nn
