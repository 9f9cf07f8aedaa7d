// Package evorecv1 holds the messages and gRPC clients and servers of evorec's contracts
// (package evorec.v1), generated from protos/evorec/v1 by protoc-gen-go and
// protoc-gen-go-grpc with protos/buf.gen.yaml; do not edit the .pb.go files.
//
// Package github.com/evorec/evorec/clients/go/evorec dials them with deadlines, retries and
// request ids set up.
package evorecv1
