import sys, time, numpy as np
sys.path.insert(0, __import__('os').path.join(__import__('os').path.dirname(__file__), '..'))
from minimenet import conv, winograd
from minimenet.conv_geometry import ConvGeometry
def tm(f, n=3):
    ts=[]
    for _ in range(n):
        t=time.perf_counter(); r=f(); ts.append(time.perf_counter()-t)
    return min(ts)*1e3, r
rng=np.random.default_rng(0)
for (b,ci,h,co) in [(2,3,7,4),(1,5,6,3)]:
    for dt in ('float64','float32'):
        x=rng.standard_normal((b,ci,h,h+2)).astype(dt); w=rng.standard_normal((co,ci,3,3)).astype(dt)
        g=ConvGeometry.of(x.shape,w.shape,1,1,'t')
        y0=conv.conv2d_forward(x.astype('float64'),w.astype('float64'),(1,1),(1,1)); y1=winograd.forward(x,w,g)
        dy=rng.standard_normal(y0.shape).astype(dt)
        dw0=conv.conv2d_weight_grad(x.astype('float64'),dy.astype('float64'),w.shape,(1,1),(1,1)); dw1=winograd.weight_grad(x,dy,g)
        print(dt, np.abs(y1-y0).max()/np.abs(y0).max(), np.abs(dw1-dw0).max()/np.abs(dw0).max())
for (b,ci,h,co) in [(5,32,224,32),(5,64,112,64),(5,128,56,128),(5,256,28,256),(5,512,14,512),(5,1024,7,1024)]:
    x=rng.standard_normal((b,ci,h,h)).astype(np.float32); w=rng.standard_normal((co,ci,3,3)).astype(np.float32)
    g=ConvGeometry.of(x.shape,w.shape,1,1,'t')
    dy=rng.standard_normal(g.y_shape).astype(np.float32)
    t0,y0=tm(lambda: conv.conv2d_forward(x,w,(1,1),(1,1)))
    t1,y1=tm(lambda: winograd.forward(x,w,g))
    t2,d0=tm(lambda: conv.conv2d_weight_grad(x,dy,w.shape,(1,1),(1,1)))
    t3,d1=tm(lambda: winograd.weight_grad(x,dy,g))
    print((b,ci,h,co), f"fwd direct {t0:.0f} wino {t1:.0f} | wgrad direct {t2:.0f} wino {t3:.0f}", np.abs(y1-y0).max()/np.abs(y0).max(), np.abs(d1-d0).max()/np.abs(d0).max())
