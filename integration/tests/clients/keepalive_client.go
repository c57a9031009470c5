// The Go twin of keepalive_client.c: connects to ADDR PORT with Go's own
// system calls, prints its socket's keepalive options as the kernel reports
// them (Go turns keepalive on by itself: 15 s), then holds the connection
// until the peer closes it.
package main

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// TCP_USER_TIMEOUT, which Go's syscall package does not name.
const tcpUserTimeout = 0x12

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintf(os.Stderr, "usage: %s ADDR PORT\n", os.Args[0])
		os.Exit(2)
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(os.Args[1], os.Args[2]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var values [5]int
	options := [5][2]int{
		{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
		{syscall.IPPROTO_TCP, tcpUserTimeout},
	}
	var failed error
	raw.Control(func(fd uintptr) {
		for i, option := range options {
			if values[i], err = syscall.GetsockoptInt(int(fd), option[0], option[1]); err != nil {
				failed = err
			}
		}
	})
	if failed != nil {
		fmt.Fprintln(os.Stderr, "getsockopt:", failed)
		os.Exit(2)
	}
	fmt.Printf("keepalive=%d idle=%d intvl=%d cnt=%d ut=%d\n", values[0], values[1], values[2], values[3], values[4])
	buf := make([]byte, 1)
	for {
		if _, err := conn.Read(buf); err != nil {
			return
		}
	}
}
