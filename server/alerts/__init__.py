"""
Alerting: rules (L{server.alerts.rules}) evaluated when the buckets they read
close (L{server.alerts.engine}), probes that write their own series
(L{server.alerts.probe}) and the channels notifications leave by
(L{server.alerts.channels}).
"""
