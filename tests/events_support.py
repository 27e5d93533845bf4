"""Shared test data for the event tests: a hand-made event table whose features and insights are worked out
by hand in tests/test_events.py and tests/test_insights.py."""

from __future__ import annotations

from datetime import datetime

AS_OF = datetime(2024, 1, 10)

#: A: three sessions by inactivity (10:20 -> 10:50 is exactly 30 minutes: same session; 10:50 -> 11:20:01 is
#: 30 minutes and 1 second: a new one), B: a removed cart and a later direct purchase, C: one view only.
HAND = """user_id,event_time,event_type,product_id,category,brand,price,device
A,2024-01-06 10:00:00,view,p1,phones,acme,100,mobile
A,2024-01-06 10:10:00,view,p2,phones,acme,200,mobile
A,2024-01-06 10:20:00,cart,p2,phones,acme,200,mobile
A,2024-01-06 10:50:00,purchase,p2,phones,acme,200,mobile
A,2024-01-06 11:20:01,view,p3,laptops,zen,1000,desktop
A,2024-01-06 11:25:00,cart,p3,laptops,zen,1000,desktop
A,2024-01-08 20:00:00,view,p1,phones,acme,100,desktop
B,2024-01-07 02:00:00,view,p4,phones,acme,400,Mobile Web
B,2024-01-07 02:05:00,view,p5,laptops,zen,500,Mobile Web
B,2024-01-07 02:06:00,add_to_cart,p5,laptops,zen,500,Mobile Web
B,2024-01-07 02:07:00,remove_from_cart,p5,laptops,zen,500,Mobile Web
B,2024-01-09 14:00:00,transaction,p5,laptops,zen,500,desktop
C,2024-01-09 23:00:00,view,p1,phones,acme,100,
"""
