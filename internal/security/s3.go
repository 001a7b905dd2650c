package security

import (
	"fmt"
	"net/http"

	"github.com/minio/minio-go/v7"
)

// S3 are an S3 client's security settings: its keys and TLS (a CA for a
// server whose certificate the system roots do not sign).
type S3 struct {
	AccessKey string
	SecretKey string
	TLS       TLS
}

// Transport returns an HTTP transport for minio-go with the settings'
// TLS (minio.Options.Secure must match TLS.On()).
func (s S3) Transport() (*http.Transport, error) {
	tr, err := minio.DefaultTransport(s.TLS.On())
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	cfg, err := s.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	if cfg != nil {
		tr.TLSClientConfig = cfg
	}
	return tr, nil
}
