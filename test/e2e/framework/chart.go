package framework

// provisionerArgs is csi-provisioner's argv for the host-process deployment: the lab's arguments plus storage capacity
// tracking, as the chart's DaemonSet runs it. deploy/csidriver.yaml (generated from the chart) says
// storageCapacity: true, so the scheduler only places a pod with a keeplog claim on a node that has a
// CSIStorageCapacity object for the claim's StorageClass. Without a DaemonSet pod there is no owner (-1).
func (e *Env) provisionerArgs() []string {
	return append(e.Lab.ProvisionerArgs(e.Socket),
		"--enable-capacity=true",
		"--capacity-ownerref-level=-1",
		"--capacity-poll-interval=10s",
	)
}

// provisionerEnv is csi-provisioner's environment: its node (--node-deployment) and the namespace of its
// CSIStorageCapacity objects.
func (e *Env) provisionerEnv() []string {
	return []string{"NODE_NAME=" + e.Lab.NodeName(), "NAMESPACE=default"}
}
