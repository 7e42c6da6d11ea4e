package redisstore

import "syscall"

// childAttr makes a child server die with the test process, even one killed by a fatal error
// before its cleanups ran.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
