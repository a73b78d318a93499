package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// getOK sends GET url (with a bearer token when one is given) and returns the start of the body; it fails unless the
// answer is 200. Every readiness probe of the lab goes through it.
func getOK(ctx context.Context, hc *http.Client, url, bearer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8192))
	text := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return text, fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, text)
	}
	return text, nil
}
