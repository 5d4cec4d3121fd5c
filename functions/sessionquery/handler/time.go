package handler

import "time"

// timeNow is time.Now; a variable so that tests can move the clock.
var timeNow = time.Now
