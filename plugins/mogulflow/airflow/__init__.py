"""The Airflow edge, the one room that imports Airflow: the hook and the provider, the tasks every
DAG wires, the deferrable wait, alerts, lineage, and connections opened as a warehouse or a client.

May import: every room of mogulflow but `monitor` and `cli`."""
