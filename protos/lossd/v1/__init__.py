"""lossd wire contract v1: messages and gRPC stubs generated from ``loss_service.proto``.

The ``*_pb2*`` modules here are produced by ``make protos`` and must not be edited by hand.
"""
