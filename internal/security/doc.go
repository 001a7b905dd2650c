// Package security owns how ffc's connections are authenticated and
// encrypted, and who may do what:
//
//   - client settings (Kafka, NATS, S3), each made from files or the
//     environment, never from secrets on a command line, and turned into
//     the client library's own options: a kafka-go Transport and Dialer
//     (TLS, SASL/SCRAM), nats.go options (TLS, nkey seed, creds file,
//     user and password) and an HTTP transport for minio-go (TLS);
//   - the roles (producer, trainer, subscriber, uploader) and their least
//     privileges: Kafka ACLs, NATS subject permissions and S3 policies,
//     written once here and applied to the embedded servers, the real
//     servers of deploy/local and the manifests;
//   - Material: a CA, server and client certificates, SCRAM passwords,
//     NATS nkeys and S3 keys for a secure local deployment, written as
//     files (0600) that the services and the commands read.
//
// It imports no ffc pipeline package.
package security
