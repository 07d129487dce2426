//! Route netlink (rtnetlink) over a plain socket: links, veth pairs, addresses, routes, neighbours.
