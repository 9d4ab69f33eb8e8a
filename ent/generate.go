// Package ent holds the generated ent client. Nothing here is edited by hand except this
// file, entc.go and template/: the data model is ent/schema.
package ent

//go:generate go run -mod=mod entc.go
