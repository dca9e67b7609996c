package connect

// spliceBursts: on Linux (*net.TCPConn).ReadFrom a TCP source uses
// splice(2), so bursts skip the copy through user space.
const spliceBursts = true
