"""The Open Inference Protocol (KServe V2) over gRPC: messages and stubs generated from ``grpc_predict_v2.proto``
(package ``inference``). Only the server imports them.

The ``*_pb2*`` modules here are produced by ``make protos`` and must not be edited by hand. Being package
``inference``, they cannot share a Python process with tritonclient's own generated ``inference`` messages
(protobuf's default pool refuses a second definition of a symbol); lossd's client never imports them.
"""
