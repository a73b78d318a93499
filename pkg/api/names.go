package api

// The CSI driver.
const (
	// DriverName is the CSI driver name (CSIDriver object, StorageClass provisioner, plugin socket directory).
	DriverName = "keeplog.csi.io"
	// TopologyKey is the topology segment that pins a volume to its node.
	TopologyKey = "topology.keeplog.csi.io/node"
)

// Keys kubelet and csi-provisioner put into the volume context and the parameters.
const (
	// COParameterPrefix marks parameters and volume-context keys the CO adds itself (csi-provisioner's
	// --extra-create-metadata, kubelet's podInfoOnMount).
	COParameterPrefix = "csi.storage.k8s.io/"
	// VolumeContextPodName is the pod's name (CSIDriver podInfoOnMount: true).
	VolumeContextPodName = COParameterPrefix + "pod.name"
	// VolumeContextPodNamespace is the pod's namespace.
	VolumeContextPodNamespace = COParameterPrefix + "pod.namespace"
	// VolumeContextPodUID is the pod's UID.
	VolumeContextPodUID = COParameterPrefix + "pod.uid"
	// VolumeContextServiceAccount is the pod's service account name.
	VolumeContextServiceAccount = COParameterPrefix + "serviceAccount.name"
	// VolumeContextEphemeral is "true" for a CSI inline ephemeral volume.
	VolumeContextEphemeral = COParameterPrefix + "ephemeral"
)
