"""MQTT side of the edge runtime: config, durable outbox, publisher, embedded broker, watcher.

Import the submodules you need; this package imports nothing heavy (no paho, no OpenCV) so
``edge.config`` can use :class:`edge.publish.config.MqttConfig` cheaply.
"""
