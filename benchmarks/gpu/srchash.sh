# Sourced by bundle.sh and run.sh: src_hash prints a short hash of every
# source the prebuilt GPU binaries are built from (Go, CUDA, PTX, C/C++,
# go.mod/go.sum), computed the same way on both machines (no git needed).
src_hash() {
	find . \( -path ./vendor -o -path ./.gotoolchain -o -path ./.gpu-bundle -o -path ./.git -o -path ./out \
		-o -path ./.ffc-demo -o -path ./runs -o -path ./bin \) -prune -o -type f \
		\( -name '*.go' -o -name '*.cu' -o -name '*.ptx' -o -name '*.h' -o -name '*.cc' -o -name go.mod -o -name go.sum \) \
		-print | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16
}
