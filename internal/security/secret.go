package security

import (
	"fmt"
	"os"
	"strings"
)

// ReadSecret returns the secret held in path, without a trailing line
// end; an empty file is an error. The error never contains the secret.
func ReadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}
