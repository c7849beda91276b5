// sseload: many concurrent SSE subscribers of one tickrun run, in a compiled client, so
// `python -m bench api` measures the API's fan-out and not a Python client's.
//
// It connects -n subscribers to GET {url}/v1/runs/{run}/events (at most -ramp opening at
// once), prints "connected N" when all are streaming, then reads until each has seen the
// `result` event. Each event's data carries {"data": {"sent": <unix seconds>}}: the
// delivery latency is now - sent. The last line is one JSON object.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type payload struct {
	Data struct {
		Sent float64 `json:"sent"`
	} `json:"data"`
}

type subscriber struct {
	latencies []float64 // milliseconds
	err       error
}

func main() {
	url := flag.String("url", "", "API base URL")
	token := flag.String("token", "", "bearer token")
	run := flag.Int("run", 0, "run id")
	n := flag.Int("n", 1000, "subscribers")
	ramp := flag.Int("ramp", 200, "subscribers connecting at once")
	timeout := flag.Duration("timeout", 10*time.Minute, "whole-run deadline")
	flag.Parse()

	client := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: -1, MaxConnsPerHost: 0, DisableCompression: true,
		ResponseHeaderTimeout: 60 * time.Second,
	}}
	subs := make([]subscriber, *n)
	var connected atomic.Int64
	gate := make(chan struct{}, *ramp)
	var wg sync.WaitGroup
	for i := range subs {
		wg.Add(1)
		go func(s *subscriber) {
			defer wg.Done()
			s.err = follow(client, *url, *token, *run, gate, &connected, s)
		}(&subs[i])
	}
	go func() { // tell the driver when every subscriber is streaming
		for connected.Load() < int64(*n) {
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Printf("connected %d\n", *n)
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(*timeout):
		fmt.Fprintln(os.Stderr, "sseload: deadline passed")
	}
	report(subs, int(connected.Load()))
}

func follow(client *http.Client, url, token string, run int, gate chan struct{},
	connected *atomic.Int64, s *subscriber) error {
	gate <- struct{}{}
	req, err := http.NewRequest("GET", fmt.Sprintf("%s/v1/runs/%d/events", url, run), nil)
	if err != nil {
		<-gate
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	<-gate
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	connected.Add(1)
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 64*1024), 1024*1024)
	event := ""
	for lines.Scan() {
		line := lines.Text()
		switch {
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			var p payload
			if json.Unmarshal([]byte(strings.TrimSpace(line[5:])), &p) == nil && p.Data.Sent > 0 {
				now := float64(time.Now().UnixNano()) / 1e9
				s.latencies = append(s.latencies, (now-p.Data.Sent)*1000)
			}
		case line == "":
			if event == "result" {
				return nil
			}
			event = ""
		}
	}
	if err := lines.Err(); err != nil {
		return err
	}
	return fmt.Errorf("stream ended before the result event")
}

func report(subs []subscriber, connected int) {
	var all []float64
	errors := map[string]int{}
	for _, s := range subs {
		all = append(all, s.latencies...)
		if s.err != nil {
			errors[s.err.Error()]++
		}
	}
	sort.Float64s(all)
	pct := func(q float64) float64 {
		if len(all) == 0 {
			return -1
		}
		return all[int(q*float64(len(all)-1))]
	}
	out, _ := json.Marshal(map[string]any{
		"subscribers": len(subs), "connected": connected, "delivered": len(all),
		"p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1), "errors": errors,
	})
	fmt.Println(string(out))
}
