// Package api owns every name keeplog shows to its users: StorageClass parameter keys, pod and PV annotation keys,
// volume-context keys, the file and directory names it makes on the node, Event reasons and metric names.
//
// Why one package: these names are a contract with people and tools outside the binary (StorageClasses, kubectl
// annotate, collectors reading the node layout, alerts and dashboards), so changing one is a breaking change. Kept in
// one leaf package (it imports nothing), they are spelled once, documented once, and the docs test and the chart
// tests check against one list. Feature packages refer to api.X instead of keeping their own copy.
package api
