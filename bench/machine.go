package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine is what a figure was measured on.
type Machine struct {
	CPU         string // model name from /proc/cpuinfo
	Cores       int    // logical CPUs
	GOMAXPROCS  int
	MemoryBytes int64 // MemTotal from /proc/meminfo; 0 when unknown
	GoVersion   string
	OS          string // distribution, GOOS/GOARCH and kernel
}

// DetectMachine describes the machine the process runs on. What it cannot read it
// reports as unknown rather than failing: a benchmark without a CPU name still counts.
func DetectMachine() Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPU = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
		if err == nil {
			m.MemoryBytes = kb * 1024
		}
	}
	if v := osRelease(); v != "" {
		m.OS = v + ", " + m.OS
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += ", kernel " + strings.TrimSpace(string(b))
	}
	return m
}

// String is the one-line description printed with every report.
func (m Machine) String() string {
	mem := "unknown memory"
	if m.MemoryBytes > 0 {
		mem = fmt.Sprintf("%.1f GiB RAM", float64(m.MemoryBytes)/(1<<30))
	}
	return fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), %s, %s, %s", m.CPU, m.Cores, m.GOMAXPROCS, mem, m.GoVersion, m.OS)
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// osRelease returns PRETTY_NAME from /etc/os-release.
func osRelease() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
