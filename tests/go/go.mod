module faultline.test/foreign

go 1.19
