"""The core: records, the backend contract, the payload codec, the store and the reporter."""
