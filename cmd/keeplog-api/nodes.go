package main

import (
	"context"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

// staticNodes are the nodes given with --node-endpoint.
type staticNodes []retrievalapi.Node

func (s staticNodes) Nodes(context.Context) ([]retrievalapi.Node, error) { return s, nil }

// podNodes finds the node plugins as the DaemonSet's running pods: their node and host IP (hostNetwork).
type podNodes struct {
	client    kubernetes.Interface
	namespace string
	selector  string
	port      int
}

func (p podNodes) Nodes(ctx context.Context) ([]retrievalapi.Node, error) {
	list, err := p.client.CoreV1().Pods(p.namespace).List(ctx, metav1.ListOptions{LabelSelector: p.selector})
	if err != nil {
		return nil, err
	}
	var out []retrievalapi.Node
	for _, pod := range list.Items {
		if pod.Status.Phase != corev1.PodRunning || pod.Status.HostIP == "" || pod.Spec.NodeName == "" {
			continue
		}
		out = append(out, retrievalapi.Node{Name: pod.Spec.NodeName,
			URL: "https://" + net.JoinHostPort(pod.Status.HostIP, strconv.Itoa(p.port))})
	}
	return out, nil
}
