"""Many hosts: logs shipped to Redis Streams (`logtail ship`), and what reads them back.

Layer: above `streaming` (the shipper follows a file with the same Follower and Cursor as
a stream does), below `http` (the server lists and serves what shippers publish).
`logtail.fleet.keys` is the contract between the two: key names and the entry format.
"""
