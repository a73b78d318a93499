// Package kube is the small API surface keeplog's node plugin needs: clients of the API groups it uses (Clients),
// a cache of the pods on its node (their annotations drive policy and heap dumps) and Events on pods.
//
// Why not client-go's typed clients: each of them imports client-go's kubernetes/scheme, which registers every
// group of k8s.io/api (55 of them, with their conversion and defaulting code); client-go's leaderelection imports the
// whole clientset and its informers. Linked, they were a third of bin/keeplog and their registration a part of its
// heap at start. Clients are REST clients on a scheme of the six groups keeplog uses, and the resource clients they
// hand out are client-go's generic ones (gentype) — the same code the typed clients are made of — so requests,
// content types (protobuf where the typed clients prefer it) and errors are the same. test/arch fails when a
// package of bin/keeplog imports client-go/kubernetes or its scheme again.
//
// Callers define the small interfaces they use (a Get, a List and Watch, ...), which these clients and a fake
// clientset's both satisfy.
package kube
