"""lossd inside other libraries' loops: each module here depends on lossd's client (and its own library,
imported lazily), never on the server or the losses."""
