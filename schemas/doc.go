// Package schemas owns the wire: versioned messages for samples, id pairs,
// center updates, step commits and checkpoint manifests, and the decoders
// that validate them and reject bad input with a reason.
//
// It imports nothing else of the project.
package schemas
