package schemas

// Regenerate schemas/ffcpb from schemas/ffc/v1/ffc.proto (needs protoc).
//go:generate sh gen.sh
