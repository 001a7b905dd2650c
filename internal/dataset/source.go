package dataset

// Source enumerates identities and their images; producers read data
// through it whether it is real (Reader.Source) or synthetic (synth).
// Implementations are safe for concurrent use.
type Source interface {
	// ImageSize is the side of the square uint8 images.
	ImageSize() int
	// NumIDs is the number of identities: IDs are 0..NumIDs()-1.
	NumIDs() uint64
	// InstancesOf is the number of images of id.
	InstancesOf(id uint64) int
	// Image returns image instance (0..InstancesOf(id)-1) of id:
	// ImageSize² bytes, ink 255 on background 0.
	Image(id uint64, instance int) ([]byte, error)
}
