package sshconn

import (
	"net"
	"sync/atomic"
	"syscall"
)

// quickAckReads is how many of a connection's first reads are acknowledged at once.
const quickAckReads = 64

// quickAck makes the kernel acknowledge at once what the server sends in the connection's
// first reads, instead of delaying the ACK by up to 40 ms. OpenSSH's sshd writes without
// TCP_NODELAY until a session starts: after the login it sends its host keys
// (hostkeys-00@openssh.com), then the confirmation of the first channel, which Nagle's
// algorithm holds until the host keys' packet is acknowledged, and a client waiting for that
// confirmation has nothing to send the ACK with. Measured against OpenSSH 9.2 here: the
// first session of every connection took 46-50 ms, later ones 3 ms; with this, 5-6 ms.
// Once a session has started sshd sets TCP_NODELAY itself, so only the first reads need it.
func quickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{TCPConn: tc, rc: rc}
	q.set()
	return q
}

type quickAckConn struct {
	*net.TCPConn
	rc    syscall.RawConn
	reads atomic.Int32
}

func (q *quickAckConn) Read(p []byte) (int, error) {
	n, err := q.TCPConn.Read(p)
	if q.reads.Add(1) <= quickAckReads {
		q.set() // the kernel turns quick ACKs off again on its own: set after every read
	}
	return n, err
}

func (q *quickAckConn) set() {
	q.rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
