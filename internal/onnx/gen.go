package onnx

// Regenerate internal/onnx/onnxpb from proto/onnx/onnx.proto (needs protoc).
//go:generate sh gen.sh
