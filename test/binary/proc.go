package binary

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every Linux architecture Go
// supports (the kernel exports it as a constant to user space).
const clockTicks = 100

// Times is a process's CPU time in user space and in the kernel (system calls, and the softirq work done on its
// behalf: over loopback, the receiver's TCP processing runs on the sender's CPU).
type Times struct {
	User, Sys time.Duration
}

// Total is User+Sys.
func (t Times) Total() time.Duration { return t.User + t.Sys }

// Sub is t less u, field by field.
func (t Times) Sub(u Times) Times { return Times{User: t.User - u.User, Sys: t.Sys - u.Sys} }

// CPU is a process's user+system CPU time so far (utime+stime of /proc/PID/stat), in the process's own
// accounting: its threads included, its children not.
func CPU(pid int) (time.Duration, error) {
	t, err := ProcTimes(pid)
	return t.Total(), err
}

// ProcTimes is CPU's split into utime and stime.
func ProcTimes(pid int) (Times, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Times{}, err
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces and parentheses
	if i < 0 {
		return Times{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ")": state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 {
		return Times{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return Times{}, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return Times{User: time.Duration(ut) * time.Second / clockTicks, Sys: time.Duration(st) * time.Second / clockTicks}, nil
}

// RSS is the process's resident set (VmRSS of /proc/PID/status) in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// ChildCPU is the user+system CPU of a reaped child from its rusage (os.ProcessState.SysUsage), its own waited-for
// descendants included (sftp's ssh child).
func ChildCPU(ps *os.ProcessState) time.Duration { return ChildTimes(ps).Total() }

// ChildTimes is ChildCPU's split into user and system time.
func ChildTimes(ps *os.ProcessState) Times {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return Times{User: ps.UserTime(), Sys: ps.SystemTime()}
	}
	return Times{User: time.Duration(ru.Utime.Nano()), Sys: time.Duration(ru.Stime.Nano())}
}

// LoadAvg is the first three fields of /proc/loadavg ("1.50 3.66 6.06"): benchmarks print it beside their figures,
// since a shared machine's load changes them.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
